"""World Models (Ha & Schmidhuber, 2018, arXiv:1803.10122), notebook-first.

The agent has three parts, named as in the paper:

* Vision (V): a convolutional VAE that compresses each 64x64 frame to a latent z  (:mod:`wmlib.vision`)
* Memory (M): an MDN-RNN that predicts the distribution of the next z            (:mod:`wmlib.memory`)
* Controller (C): a linear policy on [z, h], evolved with CMA-ES                  (:mod:`wmlib.controller`,
  :mod:`wmlib.evolution`), in the real game or inside M's dream                  (:mod:`wmlib.dream`)

Every stage reads what the previous stage wrote into one run directory (:mod:`wmlib.rundir`), and data flows one
way through the modules; each imports only from the lines below its own (pyproject.toml's import-linter contract):

    cli | notebook                      the `wm` command; the notebooks' helpers
    widgets                             the notebooks' widgets (explorer, players, the dream game)
    study | compare | average           experiments on a trained run; controllers side by side; averaged
    play | iterate | pretrained         `wm test`; iterative training; shipped agents
    card                                an exported agent's CARD.md
    evolution                           CMA-ES over C
    evaluators                          the evaluator factory
    processes | distributed             local worker processes; Dask workers
    cluster                             local Dask clusters on loopback
    agent                               Agent, EvalSettings, run_jobs: what every evaluator runs
    dream                               the one dream loop; how faithful a dream is
    controller                          C
    memory | mixtures                   M; looking inside M's mixtures (notebook 05)
    vision                              V
    rollouts                            the random policy
    runlock                             one command at a time per run directory
    rundir                              where every artifact lives
    episodes                            the episode file format; M's training windows
    config                              settings and presets
    plots                               figures and GIFs (from arrays only)
    io | seeding | games | esstate      atomic files; seeds; the two games; CMA-ES state as data
"""

__version__ = "0.1.0"
