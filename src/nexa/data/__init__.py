"""Schema-validated, filtered, deduplicated, versioned datasets: loaders, schemas, filters, splits, generators and augmentation."""
