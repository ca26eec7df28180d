# An "mlp" model for iris: 4 features -> 16 hidden -> 3 classes, saved as safetensors.
import sys

import torch
from safetensors.torch import save_file
from torch import nn

torch.manual_seed(int(sys.argv[1]) if len(sys.argv) > 1 else 0)  # another seed, other weights
model = nn.Module()
model.linears = nn.ModuleList([nn.Linear(4, 16), nn.Linear(16, 3)])  # the mlp family's layout
save_file(model.state_dict(), "iris-mlp.safetensors")
print("wrote iris-mlp.safetensors")
