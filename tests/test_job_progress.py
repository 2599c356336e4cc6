"""Spark progress of real jobs: sampled in the driver's Python, published, kept on the run."""

PROGRAM = """
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
sc = spark.sparkContext
print(sc.parallelize(range(1000), 4).map(lambda x: x * 2).sum())
print(sc.parallelize(range(100), 3).map(lambda x: (x % 5, 1)).reduceByKey(lambda a, b: a + b, 2).count())
"""


async def test_progress_of_a_job_with_several_stages_reaches_100_percent(api, extension):
    published = []
    extension.hub.subscribe(lambda event: published.append(event) if event.type == "job_progress" else None)
    job = await api.submit(name="stages", code=PROGRAM)
    done = await api.wait(job["id"])
    assert done["state"] == "succeeded", done
    progress = done["progress"]
    # Two Spark jobs: a one-stage sum (4 tasks) and a shuffle (3 map tasks, 2 reduce tasks).
    assert progress["attempt"] == 1
    assert progress["jobs"] == {"total": 2, "done": 2, "failed": 0, "active": 0}
    assert progress["stages"] == {"total": 3, "done": 3, "failed": 0, "active": 0}
    assert progress["tasks"] == {"total": 9, "done": 9, "failed": 0, "active": 0}
    assert progress["percent"] == 100.0 and progress["current_stage"] is None
    assert done["runs"][0]["progress"] == progress
    ours = [event.data for event in published if event.data["job_id"] == job["id"]]
    assert ours and ours[-1]["percent"] == 100.0
    assert [p["tasks"]["done"] for p in ours] == sorted(p["tasks"]["done"] for p in ours)
    assert "job:" + job["id"] in published[-1].topics
