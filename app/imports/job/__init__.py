"""One job's state and books: the import_state document, the in-order ledger, the rate, the history."""
