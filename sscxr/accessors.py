"""placeholder until the accessors land."""
