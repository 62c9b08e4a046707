"""tfds_builders."""
