"""synthlearn-mia: membership-inference attacks (loss, LiRA, RMIA) against every arm."""
