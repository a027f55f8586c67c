"""Load a :class:`~.scene.Scene` into a headless pybullet client (one body per render part)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .geometry import quaternion_z, rotation_z
from .scene import Scene


@dataclass
class World:
    client: int
    body_entity: dict[int, int]  # pybullet body unique id -> entity id
    textures: dict[str, int] = field(default_factory=dict)

    def entity_lookup(self) -> np.ndarray:
        """Array mapping body uid -> entity id (0 for none), for vectorised mask conversion."""
        size = max(self.body_entity, default=-1) + 2
        table = np.zeros(size, dtype=np.int32)
        for uid, eid in self.body_entity.items():
            table[uid] = eid
        return table

    def close(self) -> None:
        import pybullet as p

        if p.isConnected(self.client):
            p.disconnect(self.client)


def connect() -> int:
    import pybullet as p

    client = p.connect(p.DIRECT)
    p.setGravity(0, 0, 0, physicsClientId=client)
    return client


def build_world(
    scene: Scene, client: int | None = None, collision: bool = False, exclude: frozenset[int] = frozenset()
) -> World:
    """Create every entity's parts as static bodies. ``collision`` adds matching collision shapes
    (concave triangle meshes) so that ray tests see the same geometry as the renderer; entities
    in ``exclude`` are left out (a cut-away view)."""
    import pybullet as p

    client = connect() if client is None else client
    world = World(client, {})
    for entity in scene.entities:
        if entity.id in exclude:
            continue
        position = np.asarray(entity.position, dtype=np.float64)
        rot = rotation_z(entity.yaw)
        for part in entity.parts:
            rgba = [*part.rgb, 1.0]
            base = position + rot @ np.asarray(part.offset)
            if part.kind == "mesh_file":
                visual = p.createVisualShape(
                    p.GEOM_MESH,
                    fileName=part.mesh_file,
                    meshScale=list(part.scale),
                    rgbaColor=rgba,
                    physicsClientId=client,
                )
                shape = dict(
                    shapeType=p.GEOM_MESH,
                    fileName=part.mesh_file,
                    meshScale=list(part.scale),
                    flags=p.GEOM_FORCE_CONCAVE_TRIMESH,
                )
            elif part.kind == "box":
                visual = p.createVisualShape(
                    p.GEOM_BOX, halfExtents=list(part.half_extents), rgbaColor=rgba, physicsClientId=client
                )
                shape = dict(shapeType=p.GEOM_BOX, halfExtents=list(part.half_extents))
            else:
                verts = np.asarray(part.vertices, dtype=np.float64).tolist()
                idx = np.asarray(part.indices, dtype=np.int32).ravel().tolist()
                visual = p.createVisualShape(
                    p.GEOM_MESH, vertices=verts, indices=idx, rgbaColor=rgba, physicsClientId=client
                )
                shape = dict(shapeType=p.GEOM_MESH, vertices=verts, indices=idx, flags=p.GEOM_FORCE_CONCAVE_TRIMESH)
            collision_shape = p.createCollisionShape(**shape, physicsClientId=client) if collision else -1
            body = p.createMultiBody(
                baseMass=0,
                baseCollisionShapeIndex=collision_shape,
                baseVisualShapeIndex=visual,
                basePosition=base.tolist(),
                baseOrientation=quaternion_z(entity.yaw),
                physicsClientId=client,
            )
            if part.texture:
                tex = world.textures.get(part.texture)
                if tex is None:
                    tex = world.textures[part.texture] = p.loadTexture(part.texture, physicsClientId=client)
                p.changeVisualShape(body, -1, textureUniqueId=tex, rgbaColor=rgba, physicsClientId=client)
            world.body_entity[body] = entity.id
    return world
