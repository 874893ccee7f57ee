"""Archive formats other than .lbox, each a subpackage implementing lockbox.protocol."""
