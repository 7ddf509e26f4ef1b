"""The HTTP layer: routes, request validation and response models. Logic lives in the domain."""
