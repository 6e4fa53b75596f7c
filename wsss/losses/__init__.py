"""Network losses: partial cross-entropy, DenseCRF / normalized cut / kernel cut, self-labeling, …

Each loss returns a sum-form value; the training loop divides the whole loss by the shared constant
``Z`` = number of valid pixels in the batch (../shared/spec/notation.md, "Normalization").
"""
