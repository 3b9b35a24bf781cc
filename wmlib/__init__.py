"""World Models (Ha & Schmidhuber, 2018, arXiv:1803.10122), notebook-first.

The agent has three parts, named as in the paper:

* Vision (V): a convolutional VAE that compresses each 64x64 frame to a latent z  (:mod:`wmlib.vision`)
* Memory (M): an MDN-RNN that predicts the distribution of the next z            (:mod:`wmlib.memory`)
* Controller (C): a linear policy on [z, h], evolved with CMA-ES                  (:mod:`wmlib.controller`,
  :mod:`wmlib.evolution`), in the real game or inside M's dream                  (:mod:`wmlib.dream`)

How to start:

* ``wm run --game DoomTakeCover --preset small`` makes an agent from scratch, stage by stage (``wm --help`` lists
  every command; ``wm test --pretrained doom`` plays a shipped one).
* The notebooks (``notebooks/00_the_whole_game.ipynb`` to ``09_your_experiment.ipynb``) build each part by hand,
  with exercises.
* docs/: the pipeline and its files (``docs/pipeline.md``), every setting (``docs/settings.md``), the results.

Every stage reads what the previous stage wrote into one run directory (:mod:`wmlib.rundir`), and data flows one
way through the modules; each imports only from the lines below its own (pyproject.toml's import-linter contract):

    cli | notebook                      the `wm` command; the notebooks' helpers
    widgets                             the notebooks' widgets (explorer, players, the dream game)
    study | compare | average           experiments on a trained run; controllers side by side; averaged
    play | iterate | pretrained         `wm test`; iterative training; shipped agents;
    | worldmodels                       world models side by side (V's loss, M's NLL)
    card                                an exported agent's CARD.md
    evolution                           CMA-ES over C
    evaluators                          the evaluator factory
    processes | distributed             local worker processes; Dask workers
    agent                               Agent and run_jobs: what every evaluator runs
    jobs                                EvalSettings; how episodes are split into jobs; the Evaluator base
    dream                               the one dream loop; how faithful a dream is
    controller                          C
    memory                              M
    mixtures                            drawing from M's mixtures at a temperature; looking inside them
    vision                              V
    rollouts                            the random policy
    farm                                tasks on local processes or Dask workers, retried if a worker dies
    cluster                             local Dask clusters on loopback
    runlock                             one command at a time per run directory
    episodes                            the episode file format; M's training windows
    rundir                              where every artifact lives
    settings                            the `wm` flags and docs/settings.md, made from the settings' declarations
    config                              settings (each declared once) and presets
    plots                               figures and GIFs (from arrays only)
    io | seeding | games | esstate      atomic files; seeds; the two games; CMA-ES state as data;
    | devices | presets                 which torch device computes; the presets' numbers
"""

__version__ = "0.1.0"
