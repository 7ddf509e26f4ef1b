"""Storage: the shop database (SQLite or DynamoDB) and the photo object store (S3)."""
