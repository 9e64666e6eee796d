/* The footprint benchmark's baseline: the same start-up and port, no RPMsg. */
int main(void)
{
    for (;;)
    {
    }
}
