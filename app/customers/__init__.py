"""Customers: schemas, the MongoDB repository and the HTTP controller."""
