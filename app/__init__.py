"""Customer import service: streams big customer CSVs into MongoDB while serving a customers API."""
