def lstm_step(memory, x, h, c):
    lstm = memory.lstm
    gates = x @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + h @ lstm.weight_hh_l0.T + lstm.bias_hh_l0
    i, f, g, o = gates.chunk(4, dim=-1)  # input, forget, cell-candidate and output gates (PyTorch's order)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # keep some of the cell, write some new
    h = torch.sigmoid(o) * torch.tanh(c)  # what the head (and C) will see
    return h, c
