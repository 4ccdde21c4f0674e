"""``make chaos``: cases that survive crashes, counted email by email.

``chaos.drill`` runs the product's embedded stack (``bench.stack``: the
Temporal dev server, the worker, the API and a SendGrid stand-in capturing
every email on loopback), raises open cases across the five policies, moves
their deadlines into the run and sends manager actions throughout, while it
kills the worker (SIGKILL) and restarts the dev server (SIGKILL and SIGTERM)
at random instants. ``chaos.verdict`` then works out, from the register (the
product's own record of every event and notice) and the role directory, the
emails each case had to send, compares them with what the stand-in received,
checks every deadline fired and replays every history.
"""
