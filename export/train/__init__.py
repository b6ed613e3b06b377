"""Training of the demo model on the synthetic shapes data: VAE, rectified-flow teacher, 4-step distillation."""
