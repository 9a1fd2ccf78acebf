"""`podnet tour`: the veth-pairs lesson, step by step, on the running lab.

`podnet.tour.lesson` holds the steps as data (command, what the output must show, an
explanation and a small diagram); `podnet.tour.runner` fills them in from the lab, runs them
for real and checks each output.
"""

__all__: list[str] = []
