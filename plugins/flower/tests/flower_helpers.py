"""What the synthlearn-flower tests share: the environment for Flower's processes, a
small recipe of a local, a FedAvg and a synthetic arm, running a recipe through the
``synthlearn`` command, and TLS certificates for a SuperLink on this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from synthlearn.testing import small_recipe

BIN = Path(sys.executable).parent
QUIET = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
         "FLWR_LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": "1"}


def flower_env(**extra: str) -> dict[str, str]:
    """This environment, Flower kept quiet and offline, one torch thread, our bin/ on PATH."""
    return {**os.environ, **QUIET, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}


def flower_recipe(runner: dict) -> dict:
    """``small_recipe`` with a local, a FedAvg (1 round) and a synthetic (GAN) arm, 1
    epoch, no cache, through ``runner``."""
    recipe = small_recipe(arms=[
        {"use": "local"},
        {"use": "fedavg", "params": {"rounds": 1}},
        {"name": "synthetic", "use": "synthetic", "params": {"share": "generator"},
         "generator": {"use": "gan", "params": {"steps": 20}}}], runner=runner)
    recipe["model"]["params"]["epochs"] = 1
    recipe["output"] = {"dir": "runs", "cache": None}
    return recipe


def run_recipe(folder: Path, recipe: dict, name: str) -> subprocess.CompletedProcess:
    """``synthlearn run`` on ``recipe`` (written to ``folder/name.yaml``) into
    ``folder/name``."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return subprocess.run([str(BIN / "synthlearn"), "run", str(path), "--out",
                           str(folder / name), "--quiet"], capture_output=True, text=True,
                          env=flower_env(), timeout=600)


def tls_files(folder: Path):
    """A CA and a SuperLink certificate for 127.0.0.1 and localhost, signed by it."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from synthlearn_flower.local import TlsFiles

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, link_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test CA")).issuer_name(name("test CA"))
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    link = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(link_key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = TlsFiles(folder / "ca.pem", folder / "superlink.pem", folder / "superlink.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.certificate.write_bytes(link.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(link_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return files
