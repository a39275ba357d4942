"""Stitching a video VAE's latents into a 3D model: the adapter spec, the adapter and the layer sweep."""
