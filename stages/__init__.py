"""Pipeline stages: one module per stage, each a plain function usable from Python."""
