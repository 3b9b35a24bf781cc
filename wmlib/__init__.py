"""World Models (Ha & Schmidhuber, 2018, arXiv:1803.10122), notebook-first.

The agent has three parts, named as in the paper:

* Vision (V): a convolutional VAE that compresses each 64x64 frame to a latent z  (:mod:`wmlib.vision`)
* Memory (M): an MDN-RNN that predicts the distribution of the next z            (:mod:`wmlib.memory`)
* Controller (C): a linear policy on [z, h], evolved with CMA-ES                  (:mod:`wmlib.controller`,
  :mod:`wmlib.evolution`), in the real game or inside M's dream                  (:mod:`wmlib.dream`)

Every stage reads what the previous stage wrote into one run directory; :mod:`wmlib.cli` is the ``wm`` command.
"""

__version__ = "0.1.0"
