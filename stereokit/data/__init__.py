"""SceneFlow data: PFM, the tree layout and lists, the generator, LMDB packing, datasets, transforms."""
