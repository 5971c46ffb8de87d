"""Labels for videos and accuracy on a labelled set: predict and eval."""
