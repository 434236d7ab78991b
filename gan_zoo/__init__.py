"""gan_zoo: everything that turns a latent code into an image (generators, loaders, inversion).

It knows nothing about privacy. Importing it does no work.
"""

__all__: list[str] = []
