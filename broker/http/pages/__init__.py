"""HTML pages the broker shows people: company login, chooser, errors, logout. No external assets."""
