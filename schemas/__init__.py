"""The contract as code: wire models, the catalogue of codes and lists, and the JSON Schemas generated from them."""
