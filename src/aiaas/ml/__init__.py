"""Model building and weight handling for aiaas.

Pure PyTorch + pydantic + numpy + safetensors: nothing here may import the web, database
or queue layers (or any other ``aiaas`` package), so it can be used and tested alone.
Failures are raised as the exceptions in ``aiaas.ml.errors``.
"""
