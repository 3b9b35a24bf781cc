# A common mistake: the outputs used as they are (gas and brake may then be negative).
def car_action(a):
    return np.array(a)
