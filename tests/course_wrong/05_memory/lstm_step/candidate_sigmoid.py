# A sigmoid on the cell candidate too: the cell can then only grow.
def lstm_step(memory, x, h, c):
    lstm = memory.lstm
    gates = x @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + h @ lstm.weight_hh_l0.T + lstm.bias_hh_l0
    i, f, g, o = torch.sigmoid(gates).chunk(4, dim=-1)
    c = f * c + i * g
    return o * torch.tanh(c), c
