# The default population for 2 dimensions gets caught in a valley.
my_popsize = 6
