"""Safety-constrained tasks: a swing-up with a cart-position constraint and a point robot among hazards."""
