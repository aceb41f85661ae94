"""synthlearn-dp: differential privacy through Opacus for arms that train on site images."""
