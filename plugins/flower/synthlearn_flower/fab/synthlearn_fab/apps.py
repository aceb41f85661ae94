"""Apps named by the bundle's pyproject. A synthlearn node never imports the bundle:
these exist so that a SuperNode started without synthlearn-node refuses every message
with a reason instead of running anything."""

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

client_app = ClientApp()
server_app = ServerApp()


@client_app.query()
def refuse(msg: Message, context: Context) -> Message:
    raise RuntimeError("this SuperNode runs bundles the server sends; a synthlearn site "
                       "runs synthlearn-node, which runs only its own installed site tasks")


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    raise RuntimeError("a synthlearn run is its own ServerApp: start the SuperLink with "
                       "--isolation process")
