"""Many explanations over a folder of photos: the resumable runner, its files, its tables, lockstep and Ray."""
