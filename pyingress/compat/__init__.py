"""Compatibility with ingress-nginx: the annotation catalogue and the migration report."""
