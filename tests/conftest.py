import torch

# Keep tests reproducible and light on the 2-core CI machine.
torch.set_num_threads(2)
