# A plain locustfile: herd runs it on every agent with that agent's share of the users, and
# reads every request as it happens (a listener herd adds beside this file).
# --host is the spec's target; HERD_AGENT / HERD_AGENTS say which agent this is.
from locust import FastHttpUser, task, between


class Shopper(FastHttpUser):
    wait_time = between(0.01, 0.02)

    @task(3)
    def item(self):
        self.client.get("/items/7", name="item")

    @task(1)
    def home(self):
        self.client.get("/fast", name="home")
