"""Converters from other checkpoint formats to our model folders, kept apart from the models (as diffusers
keeps its conversion scripts apart): `diffusers.import_diffusers` reads an SD-1.5-family diffusers folder."""
