"""Integration with a real Triton Inference Server and the export to a Triton model repository."""
