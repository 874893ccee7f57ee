"""The lockbox archive format (.lbox): docs/FORMAT.md."""
