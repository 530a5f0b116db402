"""reconcile: Terraform-style plan/apply for Weights & Biases runs."""

__version__ = "0.1.0"
