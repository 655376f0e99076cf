"""Born dead: how often a deep, narrow ReLU network is dead at initialisation.

Run from the repo root: python -m experiments.born_dead (installed:
jaxrelu-born-dead). Its modules:

- `main`: the binary
- `network`: the networks, their dead rates and the closed form
- `figures`: the figure
"""
