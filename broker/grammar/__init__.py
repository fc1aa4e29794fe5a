"""Pure readers of the strings requests and the config spell: Host, listen addresses, path folding."""
