"""Migration scripts, oldest first (a package only so that wheels include them)."""
