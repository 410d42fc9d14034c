"""A Mixer-style telemetry and policy collector for Envoy service meshes."""

__version__ = "0.1.0"
