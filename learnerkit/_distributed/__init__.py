"""Distribution on Ray: everything that imports Ray lives here, and only here.

``learners`` runs data-parallel Learner actors for LearnerGroup (``start`` reserves their
resources, ``learner_worker`` is the actor, ``updates`` tracks updates in flight,
``collectives`` forms the process group and averages gradients); ``ray_env_runners`` runs
sampling actors (``env_runner_actor``) for the training loops. Nothing here is imported
unless a group with learners or env runners is asked for.
"""
