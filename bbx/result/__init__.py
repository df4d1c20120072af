"""What an explanation is and how it is shown: the result, its pictures, its notes, its provenance and the metrics that score it."""
