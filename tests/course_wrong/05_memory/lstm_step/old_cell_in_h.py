# h computed from the old cell instead of the new one.
def lstm_step(memory, x, h, c):
    lstm = memory.lstm
    gates = x @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + h @ lstm.weight_hh_l0.T + lstm.bias_hh_l0
    i, f, g, o = gates.chunk(4, dim=-1)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
