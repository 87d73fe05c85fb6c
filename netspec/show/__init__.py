"""Pictures of what a network computes (`netspec show`)."""
