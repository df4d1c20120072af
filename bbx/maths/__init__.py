"""The pure maths of an explanation: the perturbation, the losses, the gradient estimates, the optimisers and the convergence verdict; no model and no I/O."""
