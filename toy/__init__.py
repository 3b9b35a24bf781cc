"""Two toy problems that show, in seconds, the two ideas World Models rests on.

* :mod:`toy.mdn`   -- a mixture density network on a multi-valued 1-D problem (why the Memory model M outputs a
  mixture of Gaussians rather than a single prediction);
* :mod:`toy.cmaes` -- a small, commented CMA-ES with pycma's ask/tell interface (how the Controller C is found
  without gradients);
* :mod:`toy.plots` -- figures and widgets for both; :mod:`toy.cmaes_gif` writes an animated GIF of a CMA-ES run.

Nothing here depends on :mod:`wmlib`; notebooks 01 and 02 tell the story around these modules.
"""
