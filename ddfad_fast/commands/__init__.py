"""Sub-commands of the ``ddfad`` CLI (see ddfad_fast.cli)."""
